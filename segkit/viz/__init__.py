"""Pictures a person can open: colour label maps, overlays with a class legend, side-by-side panels
(:mod:`segkit.viz.draw`, numpy + OpenCV + Pillow), curves and confusion matrices (:mod:`segkit.viz.plots`, matplotlib,
the optional extra ``plots``) and CSV tables (:mod:`segkit.viz.tables`).

Nothing heavy is imported here; each module imports what it needs.
"""
