"""Verified, restorable backups of a SQLAlchemy database and its content-addressed blobs.

The package knows nothing of the application beyond "a database URL, and a folder of
content-addressed blobs the database references": the application hands in a
:class:`backup.run.BackupSource` with the query listing the referenced blobs. See the README
(Backups) for the commands and the layout on disk.
"""
