"""What is learned and from what: the models (`models`), the data sets (`data`), the frozen
prefix and its feature cache (`frozen`), and tiny local checkpoints for toy profiles (`tiny`)."""
