-- Age in whole years on a date, from a registry birth date 'yyyymmdd' ('00' for an unknown month or
-- day). When the month or day is unknown the birthday counts as passed: the age may be one year too
-- high, never too low, which is the safe side for the 90+ group.
create or replace temp macro age_on(birth_date, on_date) as
    year(on_date) - try_cast(substr(birth_date, 1, 4) as integer)
    - case
        when coalesce(try_cast(substr(birth_date, 5, 2) as integer), 0) = 0 then 0
        when try_cast(substr(birth_date, 5, 2) as integer) > month(on_date) then 1
        when try_cast(substr(birth_date, 5, 2) as integer) = month(on_date)
            and coalesce(try_cast(substr(birth_date, 7, 2) as integer), 0) > day(on_date) then 1
        else 0
    end
