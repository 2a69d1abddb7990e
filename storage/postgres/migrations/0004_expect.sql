-- Expect (storage.Deferrer) checks a record's version with the
-- transaction's other statements, without waiting for an answer: the
-- check is rapport_expect(the version is the expected one, its position
-- in the transaction), which fails the transaction with an error of its
-- own (SQLSTATE RX001) whose message is that position.
CREATE FUNCTION rapport_expect(ok boolean, what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = 'RX001', MESSAGE = what;
    END IF;
END
$$;

-- Every role that may write may check, whatever the default privileges.
GRANT EXECUTE ON FUNCTION rapport_expect(boolean, text) TO PUBLIC;
