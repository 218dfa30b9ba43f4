-- The dashboard's telemetry store lives in its own database beside the app's.
CREATE DATABASE telemetry OWNER vrp;
