"""Running past one machine: env workers as Ray actors (`ray_env`), the run's ``distributed`` config (`config`),
joining or starting a Ray cluster (`cluster`), and the data-parallel learner over torch.distributed (`learner`).
Ray is an optional extra (``pip install -e '.[ray]'``); nothing here imports it until a Ray backend is asked for."""
