"""Models: backbone registry, classification head, freeze policies, the LightningModule."""
