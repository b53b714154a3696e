"""Hypothesis: any valid name, role and password goes in and comes back out (the name as
NFC, found in any letter case, the password accepted and nothing else), and any name with a
control or invisible character is refused before anything is written."""

from __future__ import annotations

import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from opentranscribe_pipeline.accounts import ROLES, AccountExists, AccountStore, InvalidAccount, SignInRefused, User

from .conftest import Clock, cheap_hasher

# printable text; without the dotless i, whose capital is the ASCII I (so "ı" and "I" are two names)
printable = st.characters(
    blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"), blacklist_characters="ı"
)
printable |= st.just(" ")
# on tmpfs where there is one: the property is about the store's logic, not the disk's fsync
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
names = st.text(printable, min_size=1, max_size=64).filter(lambda s: s == s.strip())
passwords = st.text(min_size=8, max_size=80)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, role=st.sampled_from(ROLES), password=passwords, other=passwords)
def test_names_roles_and_passwords_round_trip(name, role, password, other):
    stored = unicodedata.normalize("NFC", name)
    assume(len(stored) <= 64 and len(unicodedata.normalize("NFKC", password)) >= 8)
    assume(unicodedata.normalize("NFKC", other) != unicodedata.normalize("NFKC", password))
    with (
        tempfile.TemporaryDirectory(dir=SCRATCH) as folder,
        AccountStore.open(str(Path(folder) / "a.sqlite"), clock=Clock(), hasher=cheap_hasher()) as store,
    ):
        assert store.add_user(name, password, role) == User(stored, role)
        assert store.list_users() == [User(stored, role)]
        assert store.sign_in(name.swapcase(), password, "c") == User(stored, role)
        assert store.sign_in(unicodedata.normalize("NFD", name), unicodedata.normalize("NFD", password), "c")
        with pytest.raises(SignInRefused):
            store.sign_in(name, other, "c")
        with pytest.raises(AccountExists):
            store.add_user(name.upper(), other, role)
        assert store.session_user(store.create_session(User(stored, role))) == User(stored, role)


@settings(max_examples=40, deadline=None)
@given(
    head=st.text(printable, max_size=20),
    bad=st.characters(whitelist_categories=("Cc", "Cf", "Zl", "Zp")),
    tail=st.text(printable, max_size=20),
)
def test_a_name_with_a_control_or_invisible_character_is_refused(tmp_path_factory, head, bad, tail):
    with pytest.raises(InvalidAccount):
        AccountStore.open(str(tmp_path_factory.getbasetemp() / "refused.sqlite"), hasher=cheap_hasher()).add_user(
            head + bad + tail, "long enough password", "viewer"
        )
