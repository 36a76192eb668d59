"""Cost reports of a provider replay: per request, per tenant, per session; on screen, as JSON and CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from cachesim._contract import ratio
from cachesim.providers.engine import CAUSES, ProviderResult
from cachesim.providers.prices import RATE_FIELDS
from cachesim.report._tables import make_console, print_table

__all__ = ["retention_bounds", "evictions", "group_totals", "per_tenant", "per_session",
           "observed_vs_predicted", "report_dict", "print_cost", "print_variant", "prices_dict", "print_prices",
           "write_requests_csv", "TOKEN_COLUMNS"]

TOKEN_COLUMNS = ("prompt_tokens", "uncached", "write_short", "write_long", "read", "output_tokens")
MAX_ROWS = 20


def group_totals(result: ProviderResult, codes: np.ndarray) -> dict[int, dict]:
    """Sums of the token and dollar columns per group code (codes >= 0), plus request counts and miss causes."""
    keep = codes >= 0
    uniq, inverse = np.unique(codes[keep], return_inverse=True)
    k = len(uniq)
    sums = {c: np.bincount(inverse, weights=getattr(result, c)[keep], minlength=k) for c in TOKEN_COLUMNS}
    others = np.bincount(inverse, weights=(result.read * result.from_other_tenant())[keep], minlength=k)
    cost = np.bincount(inverse, weights=result.cost[keep], minlength=k)
    base = np.bincount(inverse, weights=result.cost_uncached[keep], minlength=k)
    count = np.bincount(inverse, minlength=k)
    cause = np.zeros((k, len(CAUSES)), np.int64)
    np.add.at(cause, (inverse, result.cause[keep].astype(np.int64)), 1)
    out = {}
    for i, code in enumerate(uniq.tolist()):
        prompt = int(sums["prompt_tokens"][i])
        row = {c: int(sums[c][i]) for c in TOKEN_COLUMNS}
        row.update(requests=int(count[i]), token_hit_ratio=ratio(row["read"], prompt),
                   read_from_other_tenants=int(others[i]),
                   cost_usd=float(cost[i]), cost_uncached_usd=float(base[i]), savings_usd=float(base[i] - cost[i]),
                   miss_causes={CAUSES[c]: int(cause[i, c]) for c in range(len(CAUSES)) if cause[i, c] and c})
        out[code] = row
    return out


def per_tenant(result: ProviderResult) -> dict[str, dict]:
    return {result.tenant_names[c]: row for c, row in group_totals(result, result.tenant.astype(np.int64)).items()}


def per_session(result: ProviderResult) -> dict[int, dict]:
    return group_totals(result, result.session.astype(np.int64))


def observed_vs_predicted(result: ProviderResult) -> dict | None:
    """Where the trace carries usage: predicted against observed cache reads and writes, per request and overall
    (mean absolute error in tokens over the requests whose figure is known)."""
    if result.observed_read is None and result.observed_write is None:
        return None
    out: dict = {}
    for name, observed, predicted in (("read", result.observed_read, result.read),
                                      ("write", result.observed_write, result.write_short + result.write_long)):
        if observed is None:
            continue
        known = observed >= 0
        if not known.any():
            continue
        err = np.abs(predicted[known] - observed[known])
        out[name] = {"requests": int(known.sum()), "observed_tokens": int(observed[known].sum()),
                     "predicted_tokens": int(predicted[known].sum()), "mae_tokens": float(err.mean()),
                     "exact_requests": int((err == 0).sum())}
    return out or None


def calibration(result: ProviderResult, inp, observed_cost: np.ndarray | None) -> dict | None:
    """How well the prediction matches the log, over the requests whose cache reads and writes it gives: requests
    predicted exactly (reads and writes), the absolute errors as a share of the billed prompt tokens, and the bill
    predicted against what the logged usage bills at the same prices (an invoice tie-out)."""
    if result.observed_read is None or result.observed_write is None:
        return None
    known = (result.observed_read >= 0) & (result.observed_write >= 0)
    if not known.any():
        return None
    prompt = result.prompt_tokens
    if inp.observed_input is not None:
        prompt = np.where(inp.observed_input >= 0, inp.observed_input, prompt)
    total = max(int(prompt[known].sum()), 1)
    read_err = np.abs(result.read - result.observed_read)[known]
    write_err = np.abs(result.write_short + result.write_long - result.observed_write)[known]
    return {"requests": int(known.sum()), "exact_requests": int(((read_err == 0) & (write_err == 0)).sum()),
            "cache_read_mae_share": float(read_err.sum() / total),
            "cache_write_mae_share": float(write_err.sum() / total),
            "cost_observed_usd": None if observed_cost is None else float(observed_cost[known].sum()),
            "cost_predicted_usd": float(result.cost[known].sum())}


def print_calibration(cal: dict, console=None) -> None:
    from rich.console import Console

    console = console or Console()
    line = (f"calibration: {cal['exact_requests']:,} of {cal['requests']:,} requests predicted exactly; cache-read "
            f"error {cal['cache_read_mae_share']:.1%} of prompt tokens, cache-write error "
            f"{cal['cache_write_mae_share']:.1%}; predicted ${cal['cost_predicted_usd']:,.4f}")
    if cal["cost_observed_usd"]:
        gap = cal["cost_predicted_usd"] / cal["cost_observed_usd"] - 1
        line += f" against ${cal['cost_observed_usd']:,.4f} for the logged usage ({gap:+.1%})"
    console.print(line)


def retention_bounds(inp, rules, prices) -> dict | None:
    """OpenAI ``in_memory`` retention is documented only as a range (5-10 min idle, up to 1 h): the bill at the
    5-minute and the 60-minute ends, beside the default (PROVIDERS.md §8.3). None for other rule sets."""
    import dataclasses

    from cachesim.providers.engine import simulate
    from cachesim.providers.rules import OpenAI

    if not isinstance(rules, OpenAI) or rules.effective_retention != "in_memory":
        return None
    out = {}
    for idle in (300.0, 3600.0):
        s = simulate(inp, dataclasses.replace(rules, retention="in_memory", in_memory_idle_s=idle), prices).summary()
        out[f"idle_{idle:g}s"] = {"token_hit_ratio": s["token_hit_ratio"], "cost_usd": s["cost_usd"]}
    return out


def evictions(result: ProviderResult) -> dict[str, dict[str, int]]:
    """Requests whose miss was an eviction, per tenant, by the tenant whose insertion evicted the entry."""
    if result.evicted_by is None:
        return {}
    out: dict[str, dict[str, int]] = {}
    hit = np.flatnonzero(result.evicted_by >= 0)
    names = result.tenant_names
    for victim, evictor in zip(result.tenant[hit].tolist(), result.evicted_by[hit].tolist(), strict=True):
        row = out.setdefault(names[victim], {})
        row[names[evictor]] = row.get(names[evictor], 0) + 1
    return out


def report_dict(result: ProviderResult, per_request: bool = False) -> dict:
    out = {"summary": result.summary(), "rules": _rules_dict(result.rules),
           "prices": [{"model": r.model, "above_input_tokens": r.above_input_tokens, "period": r.period,
                       "as_of": r.as_of, "source": r.source} for r in result.price_rows],
           "tenants": per_tenant(result), "sessions": {str(k): v for k, v in per_session(result).items()}}
    ovp = observed_vs_predicted(result)
    if ovp:
        out["observed_vs_predicted"] = ovp
    ev = evictions(result)
    if ev:
        out["evicted_by"] = ev
    if per_request:
        out["requests"] = {c: getattr(result, c).tolist() for c in (*TOKEN_COLUMNS, "cost", "cost_uncached")}
        out["requests"]["cause"] = [CAUSES[c] for c in result.cause]
    return out


def _rules_dict(rules) -> dict:
    import dataclasses

    return {"provider": rules.provider, **{f.name: getattr(rules, f.name) for f in dataclasses.fields(rules)}}


def write_requests_csv(result: ProviderResult, path: str | Path) -> None:
    columns = [*TOKEN_COLUMNS, "cost", "cost_uncached", "savings"]
    arrays = [getattr(result, c) for c in columns[:-1]] + [result.cost_uncached - result.cost]
    observed = [(n, a) for n, a in (("observed_read", result.observed_read),
                                    ("observed_write", result.observed_write)) if a is not None]
    with open(path, "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["request", "tenant", "session", *columns, "cause", *(n for n, _ in observed)])
        names = result.tenant_names
        for i in range(result.n_requests):
            w.writerow([i, names[result.tenant[i]], int(result.session[i]),
                        *(repr(float(a[i])) if a.dtype.kind == "f" else int(a[i]) for a in arrays),
                        CAUSES[result.cause[i]], *(int(a[i]) for _, a in observed)])


def print_cost(result: ProviderResult, label: str, console: Console | None = None,
               bounds: dict | None = None) -> None:
    console = console or make_console()
    s = result.summary()
    short, long_ = result.write_labels
    console.print(f"[bold]cachesim cost[/bold] — {label}")
    console.print(f"rules: {result.rules.provider} {result.model} ({result.impl} loop) · prices: "
                  + "; ".join(f"{r.model}{' >' + format(r.above_input_tokens, ',') if r.above_input_tokens else ''}"
                              f"{' ' + r.period if r.period != 'flat' else ''} as of {r.as_of} ({r.source})"
                              for r in result.price_rows))
    t = Table(header_style="bold")
    t.add_column("")
    t.add_column("tokens", justify="right")
    t.add_column("share", justify="right")
    prompt = max(s["prompt_tokens"], 1)
    n_classes = len(getattr(result.rules, "write_fields", ()))
    rows = [("uncached input", s["uncached_tokens"])]
    rows += [(f"cache {short}", s["write_short_tokens"])] if n_classes >= 1 else []
    rows += [(f"cache {long_}", s["write_long_tokens"])] if n_classes >= 2 else []
    rows += [("cache read", s["read_tokens"])]
    for name, value in rows:
        t.add_row(name, f"{value:,}", f"{value / prompt:.1%}")
    t.add_row("prompt total", f"{s['prompt_tokens']:,}", "")
    t.add_row("output", f"{s['output_tokens']:,}", "")
    print_table(console, t)
    console.print(f"dollars: ${s['cost_usd']:,.4f} with the cache · ${s['cost_uncached_usd']:,.4f} without · "
                  f"saved ${s['savings_usd']:,.4f} ({s['savings_ratio']:.1%}) · {s['requests']:,} requests"
                  + (f", {s['rejected_requests']:,} rejected" if s["rejected_requests"] else ""))
    if s["created_tokens"]:
        console.print(f"explicit cached contents: {s['created_tokens']:,} tokens put in new objects; creation + "
                      f"storage ${s['storage_cost_usd']:,.4f} (included above)")
    causes = {k: v for k, v in s["miss_causes"].items() if v and k != "none"}
    if causes:
        console.print("miss causes (requests): " + ", ".join(f"{k} {v:,}" for k, v in causes.items()))
    tenants = per_tenant(result)
    if len(tenants) > 1:
        tt = Table(title="per tenant", header_style="bold")
        for col in ("tenant", "requests", "prompt tokens", "hit ratio", "read from others", "with cache $",
                    "without $", "saved $"):
            tt.add_column(col, justify="left" if col == "tenant" else "right")
        ranked = sorted(tenants.items(), key=lambda kv: -kv[1]["cost_usd"])
        for name, row in ranked[:MAX_ROWS]:
            tt.add_row(name, f"{row['requests']:,}", f"{row['prompt_tokens']:,}", f"{row['token_hit_ratio']:.3f}",
                       f"{row['read_from_other_tenants']:,}", f"{row['cost_usd']:.4f}",
                       f"{row['cost_uncached_usd']:.4f}", f"{row['savings_usd']:.4f}")
        if len(ranked) > MAX_ROWS:
            tt.caption = f"{len(ranked) - MAX_ROWS} more tenants in the JSON output"
        print_table(console, tt)
    ev = evictions(result)
    if ev:
        pairs = sorted(((c, v, e) for v, row in ev.items() for e, c in row.items()), key=lambda x: (-x[0], x[1], x[2]))
        more = f"; {len(pairs) - 10} more pairs in the JSON output" if len(pairs) > 10 else ""
        console.print("evicted, tenant <- evicting tenant (requests): "
                      + "; ".join(f"{v} <- {e} ({c})" for c, v, e in pairs[:10]) + more)
    if bounds:
        console.print("in_memory retention is a range: " + "; ".join(
            f"idle {key[5:-1]} s: hit ratio {b['token_hit_ratio']:.3f}, ${b['cost_usd']:,.4f}"
            for key, b in bounds.items()))
    ovp = observed_vs_predicted(result)
    if ovp:
        for name, row in ovp.items():
            console.print(f"observed vs predicted cache {name}: {row['observed_tokens']:,} vs "
                          f"{row['predicted_tokens']:,} tokens over {row['requests']:,} requests; mean absolute "
                          f"error {row['mae_tokens']:,.1f} tokens; {row['exact_requests']:,} exact")


def print_variant(base: dict, variant: dict, console: Console | None = None) -> None:
    """One line: what the ``--vs`` variant (``{"changes", "summary"}``) saves or costs against the base summary."""
    v = variant["summary"]
    delta = base["cost_usd"] - v["cost_usd"]
    change = ", ".join(f"{k}={val}" for k, val in variant["changes"].items())
    verb = "saves" if delta >= 0 else "costs"
    share = abs(delta) / base["cost_usd"] if base["cost_usd"] else 0.0
    (console or make_console()).print(
        f"with {change}: {v['provider']} {v['model']}, hit ratio {v['token_hit_ratio']:.3f}, "
        f"${v['cost_usd']:,.4f} with "
        f"the cache: the change {verb} ${abs(delta):,.4f} ({share:.1%})")


def prices_dict(table, rows) -> dict:
    """Price rows (of a loaded price table) as JSON-ready data, their dates as ISO text."""
    import dataclasses

    out = []
    for r in rows:
        d = dataclasses.asdict(r)
        for k in ("valid_from", "valid_until"):
            d[k] = d[k].isoformat() if d[k] else None
        out.append(d)
    return {"version": table.version, "files": table.files, "rows": out}


def _rate(value) -> str:
    return "—" if value is None else f"{value:g}"


def print_prices(table, rows, console: Console | None = None) -> None:
    """One table per provider of price rows (of a loaded price table), each row's source given by number."""
    console = console or make_console()
    console.print(f"[bold]cachesim prices[/bold] — registry {table.version} · USD per 1M tokens · from "
                  f"{', '.join(table.files)}")
    for prov in dict.fromkeys(r.provider for r in rows):
        group = [r for r in rows if r.provider == prov]
        fields = [f for f in RATE_FIELDS if any(getattr(r, f) is not None for r in group)]
        t = Table(title=prov, title_justify="left", header_style="bold")
        t.add_column("model")
        t.add_column("tier / period / validity")
        for f in fields:
            t.add_column(f.replace("_", " ").replace("storage per hour", "storage/h"), justify="right")
        t.add_column("as of")
        t.add_column("source")
        sources: dict[str, int] = {}
        for r in group:
            tier = [f"> {r.above_input_tokens:,}" if r.above_input_tokens else "",
                    "" if r.period == "flat" else r.period]
            if r.valid_from:
                tier.append(f"from {r.valid_from:%Y-%m-%d %H:%M}")
            if r.valid_until:
                tier.append(f"until {r.valid_until:%Y-%m-%d %H:%M}")
            ref = sources.setdefault(r.source, len(sources) + 1)
            t.add_row(r.model, " ".join(x for x in tier if x), *(_rate(getattr(r, f)) for f in fields), r.as_of,
                      f"[{ref}]" + (" " + r.note if r.note else ""))
        print_table(console, t)
        for source, ref in sources.items():
            console.print(f"  [{ref}] {source}", highlight=False, soft_wrap=True, markup=False)
        aliases = [f"{r.model} = {', '.join(r.aliases)}" for r in group if r.aliases]
        if aliases:
            console.print("  aliases: " + "; ".join(dict.fromkeys(aliases)))
