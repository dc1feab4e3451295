-- the table holds only the last recorded load
delete from load_fingerprints
