"""Where the model looks: Grad-CAM heatmaps and their overlays."""
