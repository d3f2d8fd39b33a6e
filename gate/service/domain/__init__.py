"""HTTP controllers and the services behind them, one module per noun."""
