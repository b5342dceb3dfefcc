CREATE TABLE users (
    username      VARCHAR(256) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    date_of_birth DATE NOT NULL
) ENGINE = InnoDB;
