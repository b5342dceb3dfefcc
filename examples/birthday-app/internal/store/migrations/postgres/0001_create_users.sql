CREATE TABLE users (
    username      TEXT NOT NULL PRIMARY KEY,
    date_of_birth DATE NOT NULL
);
