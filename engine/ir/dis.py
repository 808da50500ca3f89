"""The disassembler: a Program as stable, readable text (for golden tests).

``maple compile --dis RULES`` prints it.  The format is versioned with the
IR (the first line names it) and deterministic: the same pack always prints
the same text.
"""
from __future__ import annotations

from .opcodes import NODE_OPERANDS, VARIADIC_OPS, Op
from .program import KIND_NAMES, SLOT_KIND_NAMES, Program


def _fmt_num(x: float) -> str:
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


def node_text(p: Program, n: int) -> str:
    op = Op(p.op[n])
    a, b, c, k = p.a[n], p.b[n], p.c[n], p.k[n]
    kind = KIND_NAMES[p.kind[n]]
    if op == Op.CONST_NUM:
        args = _fmt_num(k)
    elif op == Op.CONST_BOOL:
        args = "true" if k else "false"
    elif op == Op.CONST_STR:
        args = f"s{a} {p.strings[a]!r}"
    elif op == Op.CONST_GEO:
        args = f"({p.geos[a][0]}, {p.geos[a][1]})"
    elif op in (Op.LOAD_NUM, Op.LOAD_STR, Op.LOAD_BOOL, Op.LOAD_GEO, Op.SLOT_PRESENT):
        args = f"${a} {p.slots[a].dotted}"
    elif op == Op.EXPERIMENT:
        args = f"x{a} {p.experiments[a].name}"
    elif op in VARIADIC_OPS:
        args = " ".join(f"%{m}" for m in p.args[a:a + b])
    elif op == Op.IN_LIST:
        args = f"%{a} L{b}"
    elif op in (Op.IN_SET,):
        args = f"%{a} ${b} {p.slots[b].dotted}"
    elif op in (Op.MAP_NUM, Op.MAP_STR, Op.MAP_BOOL, Op.MAP_GEO, Op.MAP_HAS):
        args = f"${a} {p.slots[a].dotted} [%{b}]"
    elif op in (Op.SIZE, Op.LATEST_TL):
        args = f"${a} {p.slots[a].dotted}" + (f" [%{b}]" if b >= 0 else "")
    elif op == Op.COUNT_TL:
        args = f"${a} {p.slots[a].dotted}" + (f" [%{b}]" if b >= 0 else "") + f" since %{c}"
    elif op == Op.COUNT_ALL:
        args = f"${a} {p.slots[a].dotted} keys L{b} since %{c}"
    else:
        spec = NODE_OPERANDS.get(op, "")
        args = " ".join(f"%{getattr(p, letter)[n]}" for letter in spec if getattr(p, letter)[n] >= 0)
    return f"{op.name.lower():<12} {kind:<4} {args}".rstrip()


def _list_text(p: Program, i: int) -> str:
    items = p.lists[i]
    if p.list_kinds[i] == 2:  # K_STR
        return "[" + ", ".join(repr(p.strings[s]) for s in items) + "]"
    return "[" + ", ".join(_fmt_num(x) for x in items) + "]"


def disassemble(p: Program, index_detail: bool = True) -> str:
    out = [f"; maple IR format {p.format}",
           f"; {p.stats['nodes']} nodes, {p.stats['slots']} slots, {p.stats['strings']} strings, "
           f"{p.stats['candidates']} candidates ({p.stats['exact']} decided by the index alone)"]
    out.append("\nslots:")
    for s in p.slots:
        vk = f" of {SLOT_KIND_NAMES[s.value_kind]}" if s.value_kind >= 0 else ""
        out.append(f"  ${s.index:<3} {s.dotted:<36} {SLOT_KIND_NAMES[s.kind]}{vk}  ({s.type_name})")
    if p.lists:
        out.append("\nlists:")
        for i in range(len(p.lists)):
            out.append(f"  L{i:<3} {_list_text(p, i)}")
    out.append("\nnodes:")
    for n in range(len(p.op)):
        out.append(f"  %{n:<4} {node_text(p, n)}")
    if p.segments:
        out.append("\nsegments:")
        for name, n in sorted(p.segments.items()):
            out.append(f"  {name} = %{n}")
    if p.experiments:
        out.append("\nexperiments:")
        for x in p.experiments:
            bands = ", ".join(f"{v} <{u}" for v, u in x.variants)
            out.append(f"  x{x.index} {x.name} salt={x.salt!r} holdout <{x.holdout_bp}, {bands}; on "
                       f"{', '.join(x.on) or '-'}")
    if p.templates:
        from .opcodes import TOp
        out.append("\nscore templates:")
        for i, t in enumerate(p.templates):
            parts = []
            for j, (op, a, b, value) in enumerate(t.code):
                name = TOp(op).name.lower()
                arg = {TOp.PARAM: f"p{a}", TOp.NODE: f"%{a}", TOp.CONST: _fmt_num(value)}.get(
                    TOp(op), ",".join(f"r{x}" for x in (a, b) if x >= 0))
                parts.append(f"r{j}={name}({arg})" + (" |" if j == t.n_pro - 1 else ""))
            out.append(f"  T{i} ({t.users} candidates, {t.n_params} params): {'; '.join(parts)} -> r{t.result}")
    for d in p.decisions:
        head = f"\ndecision {d.name}: {d.type_name} pick {d.policy}"
        if d.top:
            head += f" top {d.top}"
        if d.default is not None:
            head += f" default {d.default!r}"
        out.append(head)
        for f in d.fields:
            out.append(f"  field {f.name}: {f.type_name} = {f.default!r}")
        for cap in d.caps:
            out.append(f"  cap %{cap}")
        for c in d.candidates:
            parts = [f"  #{c.rank:<3} {c.kind} {c.name} priority {c.priority}"]
            parts.append(f"cond %{c.cond}" if c.cond >= 0 else "cond always")
            parts.append("exact" if c.exact else (f"residual %{c.residual}" if c.residual >= 0 else "check outputs"))
            if c.score >= 0:
                parts.append(f"score %{c.score}" + (f" = T{c.score_template}{list(c.score_params)}"
                                                     if c.score_template >= 0 else ""))
            outs = ", ".join(f"{name or 'value'}=%{node}" for name, node in c.outputs)
            if outs:
                parts.append(f"-> {outs}")
            out.append("  ".join(parts))
        if d.index is not None and d.index.attrs:
            idx = d.index
            out.append(f"  index: {len(idx.attrs)} attributes, {idx.n_words} word(s) per bitset, "
                       f"{len(idx.bits)} words")
            if index_detail:
                for attr in idx.attrs:
                    name = p.slots[attr.slot].dotted
                    if attr.kind == "set":
                        out.append(f"    {name} (set): {len(attr.postings)} postings, "
                                   f"{attr.constrained} candidates anchored")
                    else:
                        detail = (f"{len(attr.thresholds)} thresholds" if attr.kind == "num"
                                  else f"{len(attr.str_class)} values" if attr.kind == "str" else "true/false")
                        out.append(f"    {name} ({attr.kind}): {len(attr.class_offsets)} classes, {detail}, "
                                   f"{attr.constrained} candidates constrained")
    return "\n".join(out) + "\n"
