"""flask --app timebank seed demo --size S|M|L|XL [--seed N] [--timebank SLUG]"""
from __future__ import annotations

import click
from sqlalchemy import select

from timebank.errors import DomainError
from timebank.extensions import db


# PostgreSQL keeps every version of an account row a transaction updates; short transactions keep the
# posting trigger's account look-ups short on the busiest accounts.
LARGE_COMMIT_EVERY = 2_000


@click.command("demo")
@click.option("--size", type=click.Choice(["XS", "S", "M", "L", "XL"], case_sensitive=False), default="S",
              show_default=True, help="XS 60 members (tests), S 300, M 1,000, L 5,000, XL 100,000.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same community.")
@click.option("--timebank", "slug", default="riverside", show_default=True,
              help="Slug of the new time bank (XL adds SLUG-2, SLUG-3...).")
@click.option("--commit-every", type=int, default=None,
              help="Commit every N transfers (default: once at the end; 2000 for L and XL).")
@click.option("--via", type=click.Choice(["bulk", "services"]), default="bulk", show_default=True,
              help="bulk: the rows the services write, validated in memory and written in batches (triggers on); "
                   "services: one service call per event (the slow reference).")
@click.option("--jobs", type=int, default=None,
              help="Build this many time banks at once, in worker processes (XL's five banks; PostgreSQL only). "
                   "Default: one more than the CPUs on PostgreSQL, else 1.")
@click.option("--end-date", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="The story's last day (default: a fixed date, 2026-10-31, so a seed always gives the same rows).")
def seed_demo_command(size, seed, slug, commit_every, via, jobs, end_date):
    """Build a realistic demo community: the rows the app's own services write, every ledger check on."""
    from timebank import demo
    from timebank.community.models import TimeBank

    size = size.upper()
    if db.session.scalar(select(TimeBank.id).where(TimeBank.slug == slug)):
        raise click.ClickException(f"A time bank called {slug!r} already exists; choose another --timebank.")
    if commit_every is None and size in ("L", "XL"):
        commit_every = LARGE_COMMIT_EVERY
    postgres = db.engine.dialect.name == "postgresql"
    if jobs is None:
        jobs = demo.default_jobs(db.session, commit_every)
    elif jobs > 1 and not (postgres and commit_every):
        raise click.UsageError("--jobs above 1 needs PostgreSQL and --commit-every (each worker commits its bank).")
    try:
        demo.load_demo(db.session, size=size, seed=seed, slug=slug, echo=click.echo, progress=True,
                       commit_every=commit_every, via=via, end_date=end_date.date() if end_date else None,
                       jobs=jobs)
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message)
    db.session.commit()
    demo.print_logins(click.echo)


def register(app):
    app.cli.commands["seed"].add_command(seed_demo_command)
