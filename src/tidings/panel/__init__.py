"""The realtime panel of the Django admin (``/admin/tidings/panel/``), built on tidings
itself: who is connected, over what, to which topics, presence, broker health, a
topic's recent history, a test publish, and a button that disconnects a user.

Every process serving tidings listens on :data:`~tidings.panel.service.ASK`; a panel
page that opens (and every 20 s while it stays open) asks there, and every process
then publishes a snapshot of itself on :data:`~tidings.panel.service.TOPIC` every two
seconds for a minute. So the page shows all processes, over any broker, and costs
nothing while nobody looks. Both topics are open to staff users only.
"""
