CREATE TABLE users (
    username      TEXT NOT NULL PRIMARY KEY,
    date_of_birth TEXT NOT NULL
) WITHOUT ROWID;
