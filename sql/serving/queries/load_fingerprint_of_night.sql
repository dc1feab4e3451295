-- the recorded fingerprint of the night's load, if no load has happened since it was recorded
select fingerprint
from load_fingerprints
where night = :night
