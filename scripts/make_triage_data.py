"""Generate the demo support-ticket triage dataset (deterministic).

Each row is a chat: a support ticket in, a three-line triage out, e.g.::

    category: billing
    priority: high
    team: payments

The category follows from what the ticket is about and the priority from how
urgent it sounds, so even the tiny built-in model can learn the mapping within
a couple of hundred LoRA steps, and its samples visibly improve mid-run.

    python scripts/make_triage_data.py            # writes data/triage.jsonl + data/triage_eval.jsonl
    python scripts/make_triage_data.py --check    # fails if the files differ from a fresh run
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SEED = 20240601
N_TRAIN = 320
N_EVAL = 60
SYSTEM = "You triage support tickets. Reply with category, priority and team."

TEAMS = {
    "billing": "payments",
    "technical": "engineering",
    "account": "identity",
    "shipping": "logistics",
    "feature": "product",
}

PROBLEMS = {
    "billing": [
        "I was charged twice for my {plan} subscription this month.",
        "My invoice shows {amount} but my plan costs less.",
        "Please refund the {amount} charge from last week.",
        "My card was declined when I tried to renew the {plan} plan.",
        "Why did the price of the {plan} plan go up on my last bill?",
        "I cancelled my {plan} plan but I was still billed {amount}.",
    ],
    "technical": [
        "The {app} crashes every time I open the {screen} page.",
        "I get an error 500 when I save changes in the {app}.",
        "The {screen} page will not load, it just spins forever.",
        "Sync between the {app} and the website stopped working.",
        "Exports from the {screen} page come out empty.",
        "The {app} freezes after the latest update.",
    ],
    "account": [
        "I cannot log in to my account, it says my password is wrong.",
        "The password reset email never arrives.",
        "I lost my phone and cannot pass two-factor login.",
        "Please change the email address on my account to {email}.",
        "My account was locked after too many login attempts.",
        "How do I delete my account and all my data?",
    ],
    "shipping": [
        "My order {order} has not arrived yet.",
        "The tracking number for order {order} does not work.",
        "Order {order} was delivered to the wrong address.",
        "The package for order {order} arrived damaged.",
        "Can I change the delivery address for order {order}?",
        "I received the wrong item in order {order}.",
    ],
    "feature": [
        "It would be great if the {app} had a dark mode.",
        "Please add an export to CSV on the {screen} page.",
        "Could you support more languages in the {app}?",
        "I would love keyboard shortcuts in the {screen} page.",
        "Please let us share reports with people outside the team.",
        "A calendar view in the {app} would really help us.",
    ],
}

URGENCY = {
    "high": [
        "This is urgent, please help right away.",
        "Our whole team is blocked until this is fixed.",
        "Please treat this as urgent, we have a deadline today.",
        "This is critical for our business.",
    ],
    "medium": [
        "Could you look into this?",
        "Please let me know what to do.",
        "Thanks for checking.",
        "I would appreciate some help with this.",
    ],
    "low": [
        "No rush, whenever you have time.",
        "This is not urgent at all.",
        "Just a small thing, low priority.",
        "No hurry on this one.",
    ],
}

GREETINGS = ["Hi,", "Hello,", "Hi team,", "Good morning,", "", "Hey,"]
SIGNOFFS = ["Thanks, {name}", "Best, {name}", "{name}", "Regards, {name}", ""]
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jo", "Kemal", "Lea"]
PLANS = ["Pro", "Team", "Basic", "Business", "Starter"]
APPS = ["mobile app", "desktop app", "web app", "iPad app"]
SCREENS = ["dashboard", "reports", "settings", "billing", "projects"]


def _ticket(rng: random.Random) -> tuple[str, str, str]:
    category = rng.choice(sorted(PROBLEMS))
    priority = rng.choice(["high", "medium", "low"])
    problem = rng.choice(PROBLEMS[category]).format(
        plan=rng.choice(PLANS),
        amount=f"${rng.randint(5, 400)}.{rng.randint(0, 99):02d}",
        app=rng.choice(APPS),
        screen=rng.choice(SCREENS),
        email=f"{rng.choice(NAMES).lower()}{rng.randint(1, 99)}@example.com",
        order=f"#{rng.randint(10000, 99999)}",
    )
    parts = [rng.choice(GREETINGS), problem, rng.choice(URGENCY[priority]),
             rng.choice(SIGNOFFS).format(name=rng.choice(NAMES))]
    return " ".join(p for p in parts if p), category, priority


def make_rows(n: int, rng: random.Random, seen: set[str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    while len(rows) < n:
        text, category, priority = _ticket(rng)
        if text in seen:
            continue
        seen.add(text)
        reply = f"category: {category}\npriority: {priority}\nteam: {TEAMS[category]}"
        rows.append({"messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": text},
            {"role": "assistant", "content": reply},
        ]})
    return rows


def render() -> dict[str, str]:
    rng = random.Random(SEED)
    seen: set[str] = set()
    train = make_rows(N_TRAIN, rng, seen)
    held_out = make_rows(N_EVAL, rng, seen)
    dump = lambda rows: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)  # noqa: E731
    return {"triage.jsonl": dump(train), "triage_eval.jsonl": dump(held_out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    parser.add_argument("--check", action="store_true", help="verify the files instead of writing")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = [n for n, t in files.items() if not (args.out / n).is_file()
                 or (args.out / n).read_text(encoding="utf-8") != t]
        if stale:
            print(f"out of date: {stale}; run python scripts/make_triage_data.py", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name} ({text.count(chr(10))} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
