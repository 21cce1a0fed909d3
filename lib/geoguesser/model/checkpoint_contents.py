"""What a GeoLocator adds to its checkpoints: the format marker, the retrieval index, and a
contrastive model's gallery, encoded by the weights saved with it.

Lightning calls these hooks when it saves and loads a checkpoint (checkpoint.write_checkpoint
calls the first one too); checkpoint.load_checkpoint refuses files of another format.
"""

from __future__ import annotations

from geoguesser import __version__
from geoguesser.model.gallery import GALLERY_KEY, Gallery
from geoguesser.model.retrieval import RETRIEVAL_KEY, RetrievalIndex

# 3: geography.Geography's dict; settings with mean/std (TrainSettings).
# 4: fusion as a module (net.fusion.*, attention's scorer); hybrid heads; "retrieval" index;
#    contrastive heads (contrastive.*) with their "gallery" (added within format 4: older
#    files have neither, and load as before).
CHECKPOINT_FORMAT = 4


class CheckpointContents:
    """on_save_checkpoint and on_load_checkpoint of a GeoLocator (`retrieval`, `gallery`)."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["geoguesser"] = {"format": CHECKPOINT_FORMAT, "version": __version__}
        if self.retrieval is not None:
            checkpoint[RETRIEVAL_KEY] = self.retrieval.to_dict()
        if self.gallery is not None:
            checkpoint[GALLERY_KEY] = self.current_gallery().to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint's retrieval index (retrieval.attach wrote it) comes with its weights.

        A checkpoint without one leaves the index in memory as it is: under DDP another
        process may test from the best checkpoint before rank 0 has written the index into it.
        """
        index = checkpoint.get(RETRIEVAL_KEY)
        if index is not None:
            self.retrieval = RetrievalIndex.from_dict(index)
        gallery = checkpoint.get(GALLERY_KEY)
        if gallery is not None:
            self.gallery = Gallery.from_dict(gallery)
