"""Accounts through `invctl` against a real central: a disabled user cannot log in, and the
session it already held stops working at once (not when the token expires)."""

import json

from tests.support.processes import stack

PASSWORD = "correct horse battery staple 7"


def test_a_disabled_user_cannot_log_in_and_loses_the_session_it_had(
    tmp_path, kafka_cluster, topic_prefix
):
    bob = {"INVCTL_CONFIG_DIR": str(tmp_path / "bob-config")}  # bob's own saved login
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        s.invctl("user", "add", "bob", "--role", "ops", "--password-stdin", input=PASSWORD)
        s.invctl("login", "-u", "bob", "--password-stdin", input=PASSWORD, env=bob)
        before = s.invctl("--json", "whoami", env=bob)

        s.invctl("user", "disable", "bob")
        held = s.invctl("--json", "whoami", env=bob, check=False)
        again = s.invctl(
            "login", "-u", "bob", "--password-stdin", input=PASSWORD, env=bob, check=False
        )
        listed = s.invctl_json("user", "list")

        s.invctl("user", "enable", "bob")
        after = s.invctl(
            "login", "-u", "bob", "--password-stdin", input=PASSWORD, env=bob, check=False
        )

    assert json.loads(before.stdout)["subject"] == "bob"
    assert held.returncode == 6, held.stderr  # the token bob held is refused now
    assert again.returncode == 6, again.stderr
    assert "Traceback" not in held.stderr + again.stderr
    assert [u["active"] for u in listed if u["username"] == "bob"] == [False]
    assert after.returncode == 0, after.stderr  # enabled again: the same password works
