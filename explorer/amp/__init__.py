"""Mixed precision: training steps with a loss scaler, the scaler policies and fp16 band counts."""
