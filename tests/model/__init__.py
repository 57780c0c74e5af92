"""The saga model and its pure rules, with no server: definitions, graph, schedule, holds, keys."""
