-- one row of the book access log (transforms/serving/access_log.py)
insert into book_access (read_id, position, citizen_id, found, read_at, os_user, db_user, purpose, pdf)
values (:read_id, :position, :citizen_id, :found, :read_at, :os_user, :db_user, :purpose, :pdf)
