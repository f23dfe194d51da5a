"""From a trial to a usable model: retraining, the model directory, exported graphs, prediction."""
