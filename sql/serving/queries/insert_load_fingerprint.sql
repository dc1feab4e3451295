insert into load_fingerprints (night, fingerprint, recorded_at)
values (:night, :fingerprint, :recorded_at)
