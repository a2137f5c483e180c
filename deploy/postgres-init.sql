-- one server, two databases: Optuna's study storage and MLflow's tracking store
CREATE DATABASE optuna;
CREATE DATABASE mlflow;
