"""The pure parts of dashboard login: scrypt password hashes, the failure limiter, and
which ``next`` a login may send the browser to."""

from __future__ import annotations

import pytest

from signalbox.server.auth.pages import safe_next
from signalbox.server.auth.passwords import check_password, hash_password, verify_password
from signalbox.server.auth.ratelimit import FailureLimiter


def test_a_hash_carries_its_parameters_and_a_fresh_salt() -> None:
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b  # salts differ
    scheme, n, r, p, salt, key = a.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**15), "8", "1")
    assert salt != b.split("$")[4] and len(key) == 43  # 32 bytes, unpadded base64
    assert "correct horse" not in a
    assert verify_password("correct horse", a) and verify_password("correct horse", b)
    assert not verify_password("correct horsE", a) and not verify_password("", a)


def test_other_parameters_stay_verifiable_and_malformed_hashes_never_match() -> None:
    cheap = hash_password("pässwörd-1", n=2**10, r=4, p=1)
    assert cheap.startswith("scrypt$1024$4$1$")
    assert verify_password("pässwörd-1", cheap) and not verify_password("passwörd-1", cheap)
    good = hash_password("hunter2hunter2")
    for broken in (
        "",
        "hunter2hunter2",
        good.replace("scrypt", "bcrypt"),
        good.rsplit("$", 1)[0],
        good.replace("$32768$", "$3$"),  # n must be a power of two: scrypt refuses
        good.replace("$32768$", "$1073741824$"),  # past the memory cap: refused, not run
        good[:-2] + "!!",
    ):
        assert not verify_password("hunter2hunter2", broken), broken


def test_password_length_rules() -> None:
    assert check_password("12345678") == "12345678"
    with pytest.raises(ValueError, match="at least 8"):
        check_password("1234567")
    with pytest.raises(ValueError, match="at most 1024"):
        check_password("x" * 1025)


def test_the_limiter_refuses_past_the_limit_until_the_window_passes() -> None:
    lim = FailureLimiter(limit=3, window_s=60)
    for t in (0.0, 10.0, 20.0):
        assert lim.retry_after(["a"], t) == 0
        lim.fail(["a", "user:x"], t)
    assert lim.retry_after(["a"], 21.0) == 39  # the oldest failure leaves the window at 60
    assert lim.retry_after(["b", "user:x"], 21.0) == 39  # any key refused refuses
    assert lim.retry_after(["b"], 21.0) == 0
    assert lim.retry_after(["a"], 60.0) == 0  # the first failure aged out
    lim.fail(["a"], 60.0)
    assert lim.retry_after(["a"], 61.0) == 9  # now the second is the oldest of three
    lim.clear("a")
    assert lim.retry_after(["a"], 61.0) == 0


def test_the_limiter_keeps_at_most_max_keys() -> None:
    lim = FailureLimiter(limit=1, window_s=60, max_keys=100)
    lim.fail(["victim"], 0.0)
    for i in range(500):  # a spray of made-up user names
        lim.fail([f"user:{i}"], 1.0)
    assert len(lim._failures) <= 100
    assert lim.retry_after(["user:499"], 2.0) > 0  # the newest are kept


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com",
        "//evil.com/path",
        "https://evil.com",
        "http:/evil.com",
        "javascript:alert(1)",
        "/\\evil.com",
        "\\\\evil.com",
        "/\t/evil.com",
        "/\n/evil.com",
        "/ /evil.com",
        "evil.com",
        "",
        None,
        "/login",
        "/logout",
        "/\u2215evil.com",
        "/" + "a" * 3000,
    ],
)
def test_next_is_a_local_path_or_the_overview(target: str | None) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize(
    "target",
    ["/", "/explore?query=up&range=1h", "/monitors/disk_full", "/explore?query=a%2F%2Fb"],
)
def test_local_paths_are_kept(target: str) -> None:
    assert safe_next(target) == target
