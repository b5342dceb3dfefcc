-- slipway: expand
-- The users table. Each migration says, as above, whether code built for
-- an older schema still runs once it ran (expand) or not (contract K):
-- slipway reads it to keep rollbacks possible.
CREATE TABLE users (
    username      TEXT NOT NULL PRIMARY KEY,
    date_of_birth DATE NOT NULL
);
