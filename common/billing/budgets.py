"""Spend budgets: reserve a job's worst-case cost before it exists, settle it to the usage row's
cost when the job ends, release it when the job ends without one. Exact across processes.

The ledger is MySQL's, and no Redis counter fronts it, so a Redis loss cannot let spend pass a
budget. Each payer (a user, an API key) has one `budget_counters` row per budget period
holding `spent` and `reserved`; a reservation is one conditional UPDATE of the row inside the
transaction that inserts the job: add the worst case to `reserved` where spent + reserved +
worst case stays within the budget. Concurrent submissions of one payer therefore queue on
that row's lock, and each sees what the ones before it reserved: the sum admitted never
exceeds the budget.

Every job gets a `job_charges` row in that same transaction: who pays (user, key), the local
day it was submitted (its period), what was reserved and against which counters. The job's
lifecycle closes it, in the transaction of the transition that ends the job (an
`in_transaction` hook of common.jobs.effects), exactly once: a usage row moves its cost into
`spent` and the reservation out of `reserved` (settled); an ending without one only releases
(failed, canceled, past its deadline). A usage row written after the job ended (a canceled
job's upstream work, still billed) adds its cost then. The sweeper closes charges whose job
ended without the hook (rows from before it existed, a crash between the two).

Periods are calendar days or months in BUDGET_TIME_ZONE; a job counts in the period it was
submitted in. A counter row is created before the first reservation of its period (in its own
short transaction, before the submit's) and seeded from the usage rows of that period's
charges, so a budget set in the middle of a period counts what was spent before it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import zoneinfo
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import Connection, Numeric, bindparam, func, insert, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from common.accounts.models import Role, User
from common.billing.models import BudgetCounter, JobCharge, UsageRecord
from common.errors import BudgetExceeded
from common.infra.settings import BudgetSpec, Settings
from common.infra.statements import FastStatement
from common.jobs.effects import Change
from common.jobs.models import ACTIVE_STATUSES, Job, JobKind
from common.upstream.dashscope_messages import worst_prompt_tokens

logger = logging.getLogger(__name__)

MONEY = Numeric(18, 8)
_THOUSAND = Decimal(1000)
_QUANTUM = Decimal("0.00000001")
MESSAGE_OVERHEAD_TOKENS = 8  # the chat template's tokens around each message, bounded above

charges = JobCharge.__table__
counters = BudgetCounter.__table__
usage = UsageRecord.__table__

# The submit's hot path, compiled once (common.infra.statements).
_HOLD = FastStatement(update(counters).where(
    counters.c.scope == bindparam("p_scope"), counters.c.owner_id == bindparam("p_owner"),
    counters.c.period == bindparam("p_period"),
    func.coalesce(counters.c.spent, 0) + counters.c.reserved + bindparam("p_amount", type_=MONEY)
    <= bindparam("p_budget", type_=MONEY))
    .values(reserved=counters.c.reserved + bindparam("p_amount", type_=MONEY)))
_INSERT_CHARGE = FastStatement(insert(charges))
_CHARGE_OF = FastStatement(select(charges).where(charges.c.job_id == bindparam("p_job"))
                           .with_for_update())


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Payer:
    """Who pays for a request: a user, through one of their API keys or not."""

    user_id: int
    role: Role
    api_key_id: int | None = None
    key_budget: BudgetSpec | None = None
    # The user's budget as the per-request auth state read it (the cached user row, see
    # common.accounts.session_state); not known: read in the submit's transaction.
    user_budget: BudgetSpec | None = None
    user_budget_known: bool = False


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A request's worst case: the most it can cost, and the most tokens it can use."""

    cost: Decimal
    tokens: int


@dataclasses.dataclass(frozen=True)
class Hold:
    scope: str  # "user" | "key"
    owner_id: int
    period: str  # counter period: "2026-12-01" (day) or "2026-12" (month)
    budget: Decimal
    resets_at: dt.datetime  # aware UTC


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one submission reserves against (made before its transaction)."""

    payer: Payer
    day: str
    holds: tuple[Hold, ...]  # the key's; the user's is read in the submit's transaction
    estimate: Estimate
    local: dt.datetime  # the instant the periods are of, in BUDGET_TIME_ZONE


class Budgets:
    def __init__(self, settings: Settings, *,
                 clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self.settings = settings
        self.zone = zoneinfo.ZoneInfo(settings.budget_time_zone)
        self.clock = clock
        self._seeded: set[tuple[str, int, str]] = set()  # counter rows known to exist
        # job id -> (user id, key id, tokens used) for the after-commit token correction
        self.closed: dict[str, tuple[int, int | None, int]] = {}

    # --- worst cases ---------------------------------------------------------------------
    def estimate(self, kind: JobKind, model: str, request: dict) -> Estimate:
        """The most the request can cost. Chat: every UTF-8 byte of the messages and tool
        definitions counted as a token (each token of DashScope's tokenizer, and of the
        emulator's, covers at least one byte), each image as the most tokens DashScope gives
        one, plus each message's template, and max_tokens (else the model's limit) of output
        per choice (n), plus a thinking budget as output when thinking. Async tasks: n x the
        image price (images, edits), duration x the per-second price (videos). Embeddings:
        every UTF-8 byte of the texts as an input token. The Function Compute path adds its
        worst invocations."""
        price = self.settings.prices.get(model, {})
        if kind == JobKind.EMBEDDING:
            # The texts are not kept in the job row: their UTF-8 size stands in for them.
            tokens = int(request["input_bytes"])
            cost = Decimal(tokens) * price.get("input", Decimal(0)) / _THOUSAND
        elif kind != JobKind.CHAT:  # the async tasks: images, edits, videos
            parameters = request.get("parameters", {})
            n = int(parameters.get("n", 1))
            seconds = int(parameters.get("duration", 0))
            cost = Decimal(n) * price.get("image", Decimal(0)) \
                + Decimal(seconds) * price.get("video_second", Decimal(0))
            tokens = 0
        else:
            parameters = request.get("parameters", {})
            prompt = sum(worst_prompt_tokens(m) + MESSAGE_OVERHEAD_TOKENS
                         for m in request.get("messages", []))
            if parameters.get("tools"):
                prompt += len(json.dumps(parameters["tools"]).encode())
            limit = self.settings.chat_models.get(model, 8192)
            output = int(parameters.get("max_tokens") or limit) * int(parameters.get("n", 1))
            if parameters.get("enable_thinking") or \
                    model in self.settings.stream_only_chat_models:
                output += int(parameters.get("thinking_budget") or limit)
            cost = (Decimal(prompt) * price.get("input", Decimal(0))
                    + Decimal(output) * price.get("output", Decimal(0))) / _THOUSAND
            tokens = prompt + output
        if self.settings.path_for(kind.value) == "fc":
            settings = self.settings
            cost += (settings.fc_price_per_request + settings.fc_price_per_second
                     * Decimal(str(settings.fc_timeout_seconds))) * settings.job_max_attempts
        return Estimate(cost.quantize(_QUANTUM, rounding=ROUND_CEILING), tokens)

    # --- periods -------------------------------------------------------------------------
    def local_now(self) -> dt.datetime:
        return self.clock().astimezone(self.zone)

    def period(self, spec: BudgetSpec, local: dt.datetime) -> tuple[str, str, str, dt.datetime]:
        """(counter period, first day, day after the last, reset instant in UTC)."""
        day = local.date()
        if spec.period == "day":
            start, end = day, day + dt.timedelta(days=1)
            name = day.isoformat()
        else:
            start = day.replace(day=1)
            end = (start + dt.timedelta(days=32)).replace(day=1)
            name = start.isoformat()[:7]
        resets = dt.datetime.combine(end, dt.time(), self.zone).astimezone(dt.UTC)
        return name, start.isoformat(), end.isoformat(), resets

    def user_budget(self, conn: Connection, user_id: int, role: Role) -> BudgetSpec | None:
        row = conn.execute(select(User.budget_amount, User.budget_period)
                           .where(User.id == user_id)).one_or_none()
        if row is not None and row.budget_amount is not None and row.budget_period:
            return BudgetSpec(amount=row.budget_amount, period=row.budget_period)
        return self.settings.budgets.get(role)

    # --- reserving -----------------------------------------------------------------------
    def plan(self, database, payer: Payer, estimate: Estimate) -> Plan:
        """Make sure the counter rows this submission may reserve against exist: the user's
        for this day and this month (their budget is read in the submit's transaction), the
        key's for its period. Runs before the submit's transaction, in a short one of its own
        and only for counters this process has not seen yet, so the reservation in the
        submit's transaction only ever locks rows that exist."""
        local = self.local_now()
        if payer.user_budget_known:
            user_spec = payer.user_budget or self.settings.budgets.get(payer.role)
            wanted = [("user", payer.user_id, user_spec)] if user_spec else []
        else:
            wanted = [("user", payer.user_id, BudgetSpec(amount=Decimal(1), period=period))
                      for period in ("day", "month")]
        if payer.api_key_id is not None and payer.key_budget is not None:
            wanted.append(("key", payer.api_key_id, payer.key_budget))
        missing = [(scope, owner_id, self.period(spec, local))
                   for scope, owner_id, spec in wanted
                   if (scope, owner_id, self.period(spec, local)[0]) not in self._seeded]
        if missing:
            with database.connect() as conn:
                for scope, owner_id, (name, start, end, _) in missing:
                    self._ensure_counter(conn, scope, owner_id, name, start, end)
        holds = []
        if payer.user_budget_known and wanted and wanted[0][0] == "user":
            name, _, _, resets = self.period(wanted[0][2], local)
            holds.append(Hold("user", payer.user_id, name, wanted[0][2].amount, resets))
        if payer.api_key_id is not None and payer.key_budget is not None:
            name, _, _, resets = self.period(payer.key_budget, local)
            holds.append(Hold("key", payer.api_key_id, name, payer.key_budget.amount, resets))
        return Plan(payer, local.date().isoformat(), tuple(holds), estimate, local)

    def _ensure_counter(self, conn: Connection, scope: str, owner_id: int, period: str,
                        start: str, end: str) -> None:
        owner = charges.c.user_id if scope == "user" else charges.c.api_key_id
        day = charges.c.user_period if scope == "user" else charges.c.key_period
        seed = select(func.coalesce(func.sum(usage.c.cost), 0)).select_from(
            usage.join(charges, charges.c.job_id == usage.c.job_id)).where(
            owner == owner_id, day >= start, day < end).scalar_subquery()
        values = {"scope": scope, "owner_id": owner_id, "period": period, "spent": seed,
                  "reserved": Decimal(0)}
        if conn.dialect.name in ("mysql", "mariadb"):
            statement = mysql_insert(counters).values(values).prefix_with("IGNORE")
        else:
            statement = sqlite_insert(counters).values(values).on_conflict_do_nothing()
        conn.execute(statement)
        conn.commit()
        self._seeded.add((scope, owner_id, period))

    def reserve(self, conn: Connection, *, job_id: str, plan: Plan,
                now: dt.datetime) -> None:
        """Inside the submit's transaction: hold the worst case against every budget of the
        payer, or raise BudgetExceeded (which rolls the job back). Each hold is one
        conditional UPDATE: the row lock it takes queues concurrent submissions of the payer,
        and its condition sees what every one before it reserved."""
        payer, amount = plan.payer, plan.estimate.cost
        holds = list(plan.holds)
        spec = None if payer.user_budget_known else \
            self.user_budget(conn, payer.user_id, payer.role)
        if spec is not None:
            name, _, _, resets = self.period(spec, plan.local)
            holds.insert(0, Hold("user", payer.user_id, name, spec.amount, resets))
        held: dict[str, str] = {}
        for hold in holds:  # always user, then key: one lock order for everyone
            key = (counters.c.scope == hold.scope, counters.c.owner_id == hold.owner_id,
                   counters.c.period == hold.period)
            granted = _HOLD.execute(conn, {
                "p_scope": hold.scope, "p_owner": hold.owner_id, "p_period": hold.period,
                "p_amount": amount, "p_budget": hold.budget}).rowcount
            if not granted:
                row = conn.execute(select(counters.c.spent, counters.c.reserved)
                                   .where(*key)).one()
                raise _exceeded(hold, Decimal(row.spent or 0), Decimal(row.reserved), amount)
            held[hold.scope] = hold.period
        _INSERT_CHARGE.execute(conn, {
            "job_id": job_id, "user_id": payer.user_id, "api_key_id": payer.api_key_id,
            "user_period": plan.day, "key_period": plan.day if payer.api_key_id else None,
            "reserved": amount if held else Decimal(0),
            "reserved_tokens": plan.estimate.tokens, "held_user": held.get("user"),
            "held_key": held.get("key"), "cost": None, "created_at": now, "closed_at": None,
            "outcome": None})

    # --- closing (the lifecycle's in-transaction hook) ---------------------------------------
    def in_transaction(self, conn: Connection, change: Change) -> None:
        """Settle or release the job's charge with the transition that ends it."""
        if change.ended is None and change.cost is None:
            return
        row = _CHARGE_OF.execute(conn, {"p_job": change.job_id}).one_or_none()
        if row is None:
            return  # a job from before budgets existed
        cost = change.cost.amount if change.cost is not None else None
        tokens = change.cost.tokens if change.cost is not None else 0
        if cost is not None:
            if row.api_key_id is not None:
                conn.execute(update(usage).where(usage.c.job_id == change.job_id)
                             .values(api_key_id=row.api_key_id))
            self._add_spent(conn, row, cost)
        if row.closed_at is not None:
            if cost is not None:
                conn.execute(update(charges).where(charges.c.job_id == row.job_id)
                             .values(cost=func.coalesce(charges.c.cost, 0) + cost))
            return
        self._close(conn, row, cost, "settled" if cost is not None else "released")
        if row.reserved_tokens:
            self.closed[row.job_id] = (row.user_id, row.api_key_id, int(tokens))
            if len(self.closed) > 10_000:  # transactions that rolled back leave entries
                self.closed.clear()

    def token_correction(self, token_limits) -> Callable[[Change], None]:
        """The after-commit hook that corrects a closed job's tokens-per-minute entry to the
        tokens it used (common.billing.token_limits)."""
        def correct(change: Change) -> None:
            closed = self.closed.pop(change.job_id, None)
            if closed is not None:
                user_id, api_key_id, tokens = closed
                token_limits.correct(job_id=change.job_id, user_id=user_id,
                                     api_key_id=api_key_id, tokens=tokens)
        return correct

    def _add_spent(self, conn: Connection, row, cost: Decimal) -> None:
        month = row.user_period[:7]
        for scope, owner_id in (("user", row.user_id), ("key", row.api_key_id)):
            if owner_id is None:
                continue
            conn.execute(update(counters).where(
                counters.c.scope == scope, counters.c.owner_id == owner_id,
                counters.c.period.in_((row.user_period, month)), counters.c.spent.is_not(None))
                .values(spent=counters.c.spent + cost))

    def _close(self, conn: Connection, row, cost: Decimal | None, outcome: str) -> None:
        for scope, owner_id, period in (("user", row.user_id, row.held_user),
                                        ("key", row.api_key_id, row.held_key)):
            if period is None or owner_id is None:
                continue
            conn.execute(update(counters).where(
                counters.c.scope == scope, counters.c.owner_id == owner_id,
                counters.c.period == period)
                .values(reserved=counters.c.reserved - row.reserved))
        conn.execute(update(charges).where(charges.c.job_id == row.job_id,
                                           charges.c.closed_at.is_(None))
                     .values(closed_at=self.clock().replace(tzinfo=None), outcome=outcome,
                             cost=cost))

    # --- the sweeper's pass --------------------------------------------------------------
    def release_ended(self, conn: Connection, *, limit: int = 500) -> int:
        """Close the charges of jobs that ended without closing them; how many."""
        rows = conn.execute(
            select(charges).join(Job.__table__, Job.__table__.c.id == charges.c.job_id)
            .where(charges.c.closed_at.is_(None),
                   Job.__table__.c.status.not_in(ACTIVE_STATUSES))
            .limit(limit).with_for_update(skip_locked=True)).all()
        for row in rows:
            cost = conn.execute(select(usage.c.cost).where(usage.c.job_id == row.job_id)
                                ).scalar()
            if cost is not None:
                self._add_spent(conn, row, Decimal(cost))
            self._close(conn, row, cost, "settled" if cost is not None else "released")
        return len(rows)

    # --- reports -------------------------------------------------------------------------
    def status(self, conn: Connection, *, scope: str, owner_id: int,
               spec: BudgetSpec | None) -> dict | None:
        """A budget's state now: amount, spent, reserved in flight, remaining, reset time."""
        if spec is None:
            return None
        name, start, end, resets = self.period(spec, self.local_now())
        row = conn.execute(select(counters.c.spent, counters.c.reserved).where(
            counters.c.scope == scope, counters.c.owner_id == owner_id,
            counters.c.period == name)).one_or_none()
        spent = Decimal(row.spent) if row is not None and row.spent is not None \
            else self.spent_between(conn, scope=scope, owner_id=owner_id, start=start, end=end)
        reserved = Decimal(row.reserved) if row is not None else Decimal(0)
        return {"amount": float(spec.amount), "period": spec.period, "spent": float(spent),
                "reserved": float(reserved),
                "remaining": float(max(Decimal(0), spec.amount - spent - reserved)),
                "resets_at": resets.isoformat().replace("+00:00", "Z"),
                "currency": self.settings.price_currency}

    def spent_between(self, conn: Connection, *, scope: str, owner_id: int, start: str,
                      end: str) -> Decimal:
        owner = charges.c.user_id if scope == "user" else charges.c.api_key_id
        day = charges.c.user_period if scope == "user" else charges.c.key_period
        return Decimal(conn.execute(
            select(func.coalesce(func.sum(usage.c.cost), 0)).select_from(
                usage.join(charges, charges.c.job_id == usage.c.job_id))
            .where(owner == owner_id, day >= start, day < end)).scalar())

    def spent_this_period(self, conn: Connection, *, scope: str, owner_id: int,
                          spec: BudgetSpec | None) -> float:
        """Spend in the current period of `spec` (a calendar month without a budget)."""
        _, start, end, _ = self.period(spec or BudgetSpec(amount=Decimal(1), period="month"),
                                       self.local_now())
        return float(self.spent_between(conn, scope=scope, owner_id=owner_id, start=start,
                                        end=end))


def _exceeded(hold: Hold, spent: Decimal, reserved: Decimal, amount: Decimal) -> BudgetExceeded:
    whose = "Your" if hold.scope == "user" else "This API key's"
    resets = hold.resets_at.isoformat().replace("+00:00", "Z")
    seconds = max(1, int((hold.resets_at - _utc_now()).total_seconds()))
    return BudgetExceeded(
        f"{whose} spend budget of {hold.budget} cannot cover this request (worst case "
        f"{amount}; spent {spent}, reserved {reserved}); it resets at {resets}",
        # A retry cannot succeed before the reset: the OpenAI SDKs honour x-should-retry.
        headers={"X-Budget-Reset": resets, "Retry-After": str(seconds),
                 "x-should-retry": "false"})
