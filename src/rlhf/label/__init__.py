"""The human-feedback web app (paper section 3.4): labelers write demonstrations
and rank K model outputs; admins import tasks, screen labelers and export records
in the formats of shared/formats.md. See docs/label.md."""
