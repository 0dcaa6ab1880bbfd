"""`report`: provenance, leaderboard, metrics, charts and samples -> `reports/report.md` and
`reports/index.html`.

The report is for people, so it opens with what it was made from and what won. Both files
hold the same sections, one module each:

1. Provenance (`provenance`): the git commit, the corpora, the pieces per source and split,
   what prepare rejected or filtered out, the prepare params and the training profile's caps.
2. The leaderboard (`leaderboard`): one row per model, sorted by the mean rank over the
   sample columns that every model has; music metrics judged as distances from the test data.
3. Per source (`sources`): the reference rows of each corpus, and each multi-source model's
   figures per corpus; models that fell back to every source say so in the leaderboard.
4. The full metric tables and Yang & Lerch per feature (`tables`), horizontal bar charts and
   loss panels (`charts`), t-SNE maps, the listening test, and a piano roll of every sample
   and real excerpt linked to its MIDI file and audio clip (`media`).

Which metrics exist, their groups and better directions come from `cadenza.metrics.registry`;
`build` puts the sections in order and `render` writes them as markdown and HTML. Nothing
here imports torch.
"""

from cadenza.report.build import build_report

__all__ = ["build_report"]
