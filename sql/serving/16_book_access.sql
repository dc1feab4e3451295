-- the access log of health books (issue #16): one row per citizen asked for by `healthbook book`,
-- written before the books are printed. read_at is UTC. Readers may append, never read or change
-- it; the analyst role may not read it (roles.sql).
create table if not exists book_access (
    read_id     text not null,
    position    integer not null,
    citizen_id  text not null,
    found       boolean not null,
    read_at     timestamp not null,
    os_user     text,
    db_user     text,
    purpose     text not null,
    pdf         boolean not null,
    primary key (read_id, position)
);
