-- The desired state of an environment has one owner: the deployments
-- table. The runtime's copy of it, kept here, is gone; after a restart the
-- controller deploys again each environment the runtime has nothing
-- deployed for.
DROP TABLE environments;
