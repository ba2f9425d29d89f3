"""Terms: every column a scan computes is a term with a canonical key, inputs and the bars it
needs. The screen language (:mod:`.language`: text -> checked terms) and the function catalogue
(:mod:`.catalog`) describe them; :mod:`.engine` evaluates them over the panel, each key once per
scan, with the array kernels of :mod:`.kernels` (indicators, windows, candlesticks, chart
patterns, weekly/monthly bars); :mod:`.presets` ships ready-made screens."""
