"""Training objective: music and video beats (`beats`, with the `onsets` and `flow` plugins), the
beat-weighted AR loss and the contrastive loss (`losses`), the optimiser and schedule (`optim`)."""
