-- HMAC-SHA256 (RFC 2104) of a value under the night's key, as 64 lower-case hex characters.
-- The key never appears in SQL text: the caller sets the padded key blocks as session variables
-- (hmac_inner_pad = key xor 0x36.., hmac_outer_pad = key xor 0x5c..), which are not persisted.
create or replace temp macro pseudonym(value) as
    sha256(getvariable('hmac_outer_pad') || unhex(sha256(getvariable('hmac_inner_pad') || encode(value))))
