"""The identity store's schema steps as SQL files, ``NNNN_name.sql``; step 2 is
the data step ``auth._store._fold_username_case``. Read by ``auth._store``."""
