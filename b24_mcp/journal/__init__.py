"""The bot's inbox: its event queue drained into a local journal (`store`), and the drain itself (`drain`)."""
