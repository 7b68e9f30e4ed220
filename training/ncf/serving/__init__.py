"""Serving: the exported SavedModel (`export`) and what its signatures use: two-stage retrieval
(`retrieval`), request-time history (`history`, with `foldin` for the NCF types), similar items and
users (`similarity`), filters declared at training (`filter_grammar`, `filter_checks`, `filters`,
`filtered`) and the one top-k of every answer (`topk`).
"""
