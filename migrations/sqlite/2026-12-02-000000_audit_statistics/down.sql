-- Statistics are derived data (ANALYZE rebuilds them): dropping the tables
-- returns the database to the init migration's schema exactly.
DROP TABLE IF EXISTS sqlite_stat4;
DROP TABLE IF EXISTS sqlite_stat1;
