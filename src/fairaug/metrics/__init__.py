"""Quality metrics of synthetic image sets (FID, KID, IS, SSIM, LPIPS, precision/recall, diversity,
memorization, FST fidelity): pure functions of features in `functional`, feature extractors in
`extractors`, the streaming report in `report`, the DVC stage in `stage`."""
