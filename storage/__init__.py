"""What jianbao keeps: the tables and their migrations, the stores (issues, subscribers, broadcasts and their
deliveries, tracking links), the send rates workers share, and the in-memory search index (search/).

One data-access style: SQLAlchemy Core statements (select, insert, update, delete) on the tables that
tables.py declares as SQLModel models (`core_table(Model)` is the Table), run on the connection that
`Database.transaction(kind)` opens and commits. Results are Rows, which each store turns into frozen
dataclasses (content's Issue; IssueSummary, Subscriber, Broadcast, Claim...): model instances never leave
storage/.

Why Core: the work is mostly set-based (a broadcast's delivery rows in pages, claims with FOR UPDATE SKIP
LOCKED, an issue's items in one executemany), which the ORM runs row by row or splits per set of columns;
and Core rows have no identity map, lazy loading or expiry, so a statement is what it says, the same on
SQLite and PostgreSQL. SQLModel is how tables are declared (and what Alembic compares), not a query layer;
an ORM session (`Database.session`) is for a test that holds a transaction open.
"""
