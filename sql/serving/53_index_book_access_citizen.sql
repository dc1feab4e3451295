-- "who read my book, when and why": the access log by citizen
create index if not exists book_access_citizen on book_access (citizen_id, read_at);
