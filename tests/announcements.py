"""Hearing what the write path announces as changed (contacts.changes), call by call."""

from django.db import transaction

from contacts import changes


def hear_changes(monkeypatch) -> list[list[int]]:
    """The contact id lists announced as changed, one per contacts_changed call, heard once the
    writing transaction commits (run on_commit hooks to hear them). They are still recorded for the
    catch-up as usual."""
    heard: list[list[int]] = []
    record = changes._record

    def recording(contact_ids, *, derive: bool) -> None:
        ids = sorted({int(i) for i in contact_ids if i is not None})
        record(ids, derive=derive)
        if derive and ids:
            transaction.on_commit(lambda: heard.append(ids))

    monkeypatch.setattr(changes, "_record", recording)
    return heard
