"""What the simulation draws: each client's local training (`client`), how the data is split
(`partition`, `partition_report`), who takes part and how (`participation`) and when
asynchronous clients finish (`vclock`). Every draw is seeded by (run seed, round, client)."""
