from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "easyrag.documents"
    label = "documents"
    verbose_name = "Documents"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from easyrag.documents.models import Document

        # A document's stage outputs go with it: a later document given the same id (ids may be
        # chosen, e.g. doc_123) must not resume from the text of the one deleted.
        post_delete.connect(_delete_stage_outputs, sender=Document, dispatch_uid="documents.stage_outputs")


def _delete_stage_outputs(sender, instance, **kwargs) -> None:
    from easyrag.documents.pipeline import delete_stage_outputs

    delete_stage_outputs(instance)
