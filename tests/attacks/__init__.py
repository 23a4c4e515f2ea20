"""The attack catalogue: team B against team A, tricks that must neither read, change nor delete
another team's things.

The catalogue is a table: `CASES` in `tests.attacks.catalogue` (pure data: no fixtures, no
network). Every `Attack` in it is one request, sent byte-for-byte over a socket by one principal,
with the outcome it must have:

- `DENIED`: no 2xx answer, and team A's things are unchanged (for anything but GET/HEAD/OPTIONS a
  snapshot of A's things is read as admin, straight from MLflow, before and after);
- `ALLOWED`: a 2xx answer the gateway did not refuse (positive controls: the suite cannot pass by
  refusing everything);
- `NO_LEAK`: any answer, but a 2xx one carries nothing of team A's (filtered searches, harmless
  spellings MLflow ignores), and A's things are unchanged.

For `DENIED` and `NO_LEAK` a 5xx answer fails the case (a crash is not a refusal); whatever the
outcome, a 2xx answer to anyone but alice, the admin or MLflow itself must not carry team A's
markers (their names, ids and secrets).

Placeholders such as `<a.exp>`, `<b.run>`, `<a.model>` are filled from the two-team world that
`tests.attacks.world` builds; `<a.fresh_trace>` makes a new object for the case; `<new.name>` is a
random name. The runner, tests/integration/test_attacks.py, runs every case against MLflow on
SQLite and on MariaDB, and every case whose path starts with /api/ also as its /ajax-api/ twin
(unless the case says `twin=False`).

To add an attack, append an `Attack` to `CASES` in tests/attacks/catalogue.py; its name is its test
id, so it must be unique. `status` pins the exact status where it matters, `before` steps set
things up (their answers are not judged) and `after` steps check what the attack left (each with
the status it must get). Cases that once showed a gateway bug say so in `regression` (what the bug
was); they must pass like every other case.

Promotion rights are table cases on two of B's models (<e.model>: edit; <s.model>: edit and
promote:staging). Scenarios that need several steps (renames and deletes racing with policies,
wildcard model names, grants removed while their decisions are cached) are tests after the table
in tests/integration/test_attacks.py.
"""
