"""The pure core: decisions as plain functions of plain data (rollouts, images, verdicts, detection
strategies, trust rules). No I/O, no clients, no clocks; imports only the api."""
