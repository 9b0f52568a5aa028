"""The parts :class:`central_sync.consumer.CentralConsumer` wires together, one job each.

* :mod:`.session` - :class:`MqttSession`: the paho client (TLS, credentials), connect/subscribe, publishing
  with delivery tracking (so that ``stop()`` can wait for the broker's confirmation);
* :mod:`.admission` - :class:`EventAdmission`: an event message decoded, checked against its topic and the
  device registry, its sealed embedding opened, or rejected (ack ``rejected``);
* :mod:`.media` - :class:`MediaReceiver`: chunks verified and reassembled, sealed files opened, written
  durably into :class:`MediaFiles` (``media.dir``);
* :mod:`.acks` - :class:`Acknowledger`: verified media linked to a stored event, acks per device, events
  waiting ``media.grace_s`` for their files;
* :mod:`.faces` - :class:`FaceIdentifier`: a face's match in the gallery or an unknown file, inside the
  transaction one file per rider, the gallery reloaded when another process changed it;
* :mod:`.writer` - :class:`EventWriter` (events stored idempotently, as few transactions as possible, acked
  after the commit) and :class:`BatchQueue` (the writer thread taking batches off the queue);
* :mod:`.reassess` - :class:`TierReassessor`: table 1 after a commit, tier changes to the disposition desk;
* :mod:`.stats` - :class:`ConsumerStats`: the counters all of them share.
"""
