"""The configuration items register (配置项): systems and components that cases name, their relations."""

from engine.configuration.items import ConfigurationService, ImportSummary, ItemView

__all__ = ["ConfigurationService", "ImportSummary", "ItemView"]
