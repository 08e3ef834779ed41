"""The wire: how client updates travel between ranks, below the learning core.

`comm` (the one Comm interface: MPI and local; `torch_comm`: torch.distributed), `flat`
(trainable parameters as one vector),
`aggregate` (the round's weighted sum: the only owner of the buffer layout), `codec` (reduced-
precision payloads), `collective` and `star` (the two ways a round's updates combine),
`overlap` (the star's background messages), `placement` (client -> rank plans), `launcher` (what
the MPI / Slurm / PALS launcher says: ranks, local rank, threads), `timer`.
Importing this package is light: no torch until a module that needs it is imported.
"""
