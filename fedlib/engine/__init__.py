"""The engine: what every round needs (`context`), one synchronous round (`rounds`), the three
loops that make model versions — synchronous rounds (`sync`), asynchronous on the virtual clock
(`virtual`) and on the wall clock (`wall`) — and the steps they share (`async_steps`,
`lifecycle`, `stop`)."""
