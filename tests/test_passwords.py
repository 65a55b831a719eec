"""Password hashes: scrypt, salted, verified in constant time, malformed hashes never match."""

from __future__ import annotations

from tokenbridge.passwords import generate_password, hash_password, password_problem, verify_password


def test_hash_password_verifies_the_password_and_nothing_else() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("", stored)


def test_hash_password_salts_each_hash() -> None:
    assert hash_password("same password") != hash_password("same password")


def test_verify_password_refuses_no_hash_and_malformed_hashes() -> None:
    for stored in (None, "", "plain", "scrypt$1$2$3", "argon2$16384$8$1$AAAA$AAAA", "scrypt$x$8$1$AAAA$AAAA"):
        assert not verify_password("anything", stored)


def test_generate_password_is_long_random_and_acceptable() -> None:
    one, two = generate_password(), generate_password()
    assert one != two and len(one) >= 24 and password_problem(one) is None
    assert password_problem("short") is not None
