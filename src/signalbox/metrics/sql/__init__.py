"""The metric store on SQL (SQLite and PostgreSQL): series ids, partitions, layouts, rollups."""
